//! Node identity end to end: CSR over server-auth TLS, operator approval
//! with the CLI, mTLS reports, and every way a client certificate is refused.

mod common;

use std::time::Duration;

use assert_cmd::Command;
use bootd::nodes::NodeStore;
use bootd_api::{NodeReport, Slot};
use bootd_client::{self as client, Enrollment, Identity, NetConfig};
use common::*;
use hyper::StatusCode;

fn base(addr: std::net::SocketAddr) -> url::Url {
    url::Url::parse(&format!("https://localhost:{}/", addr.port())).unwrap()
}

fn bootd(f: &Fixture, args: &[&str]) -> String {
    let out = Command::cargo_bin("bootd")
        .unwrap()
        .arg("--config")
        .arg(&f.config_path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bootd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The TLS layer itself must refuse (an HTTP answer such as 403 would mean
/// the certificate got through the handshake).
fn refused_at_handshake<T: std::fmt::Debug>(r: Result<T, client::Error>, what: &str) {
    match r {
        Err(client::Error::Handshake { .. } | client::Error::Http { .. }) => {}
        other => panic!("{what} certificate not refused at the TLS handshake: {other:?}"),
    }
}

fn report_v(version: &str) -> NodeReport {
    NodeReport {
        slot: Slot::B,
        version: version.into(),
        security_version: Some(bootd_api::SecurityVersion(1)),
        confirmed: true,
        boot_img_sha256: None,
    }
}

async fn enroll(f: &Fixture, addr: std::net::SocketAddr, node: &str) -> Identity {
    let ca = f.ca_pem();
    let pending = Enrollment::begin(&base(addr), &ca, node, &NetConfig::default())
        .await
        .unwrap();
    // The operator sees the request with the key fingerprint the node shows.
    let listing = bootd(f, &["nodes", "pending"]);
    assert!(listing.contains(&pending.id), "{listing}");
    assert!(listing.contains(&pending.key_fingerprint), "{listing}");
    assert!(listing.contains(&format!("node={node}")), "{listing}");
    let waiter = {
        let p = pending.clone();
        tokio::spawn(async move {
            p.wait(Duration::from_millis(50), Duration::from_secs(20))
                .await
        })
    };
    let approved = bootd(f, &["nodes", "approve", &pending.id]);
    assert!(approved.contains(node), "{approved}");
    waiter.await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enrollment_report_and_list_end_to_end() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", b"os", "os")]);
    let s = f.start().await;
    let ca_der = f.ca_der();
    wait_for_timestamp(s.addr, &ca_der, 2).await;
    let ca = f.ca_pem();

    let id = enroll(&f, s.addr, "unit-3").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a reload tick
    client::report(
        &base(s.addr),
        &ca,
        &id,
        &NetConfig::default(),
        &report_v("1.0.0"),
    )
    .await
    .unwrap();

    let who = client::whoami(&base(s.addr), &ca, &id, &NetConfig::default())
        .await
        .unwrap();
    assert_eq!(who.node, "unit-3");
    // unit-3 is in group `workers`, which the release assigns.
    assert_eq!(who.assigned.len(), 1, "{who:?}");
    assert_eq!(who.assigned[0].name, "os.img", "{who:?}");

    let list = bootd(&f, &["nodes", "list"]);
    let line = list.lines().find(|l| l.starts_with("unit-3")).unwrap();
    assert!(
        line.contains("enrolled") && line.contains("1.0.0") && line.contains("true"),
        "{list}"
    );
    let other = list.lines().find(|l| l.starts_with("unit-1")).unwrap();
    assert!(other.contains("none") && other.contains("never"), "{list}");

    let m = metrics(s.addr, &ca_der).await;
    assert!(
        metric_value(
            &m,
            "bootd_node_last_seen_timestamp_seconds{node=\"unit-3\"}"
        )
        .unwrap()
            > 1.0e9,
        "{m}"
    );
    assert!(
        m.contains(
            "bootd_node_booted{node=\"unit-3\",version=\"1.0.0\",slot=\"B\",confirmed=\"true\"} 1"
        ),
        "{m}"
    );
    // A new report replaces the node's booted series.
    client::report(
        &base(s.addr),
        &ca,
        &id,
        &NetConfig::default(),
        &report_v("1.0.1"),
    )
    .await
    .unwrap();
    let m = metrics(s.addr, &ca_der).await;
    assert!(!m.contains("version=\"1.0.0\""), "{m}");
    // State survives a restart (rebuilt from the state directory).
    s.stop().await;
    let s = f.start().await;
    wait_for_timestamp(s.addr, &ca_der, 2).await;
    let m = metrics(s.addr, &ca_der).await;
    assert!(m.contains("version=\"1.0.1\""), "{m}");
    s.stop().await;
}

/// A Pi 5's report carries the SHA-256 of the `boot.img` its EEPROM
/// verified: bootd keeps it with the node, shows it, and a later report
/// without it (a node that stopped saying) drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_keeps_the_firmware_verified_boot_img_sha256() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", b"os", "os")]);
    let s = f.start().await;
    wait_for_timestamp(s.addr, &f.ca_der(), 2).await;
    let ca = f.ca_pem();
    let id = enroll(&f, s.addr, "unit-3").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a reload tick

    let hex = "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7";
    let report = NodeReport {
        boot_img_sha256: bootd_api::Sha256Digest::from_hex(hex),
        ..report_v("1.0.0")
    };
    let ack = client::report(&base(s.addr), &ca, &id, &NetConfig::default(), &report)
        .await
        .unwrap();
    assert!(ack.recorded, "{ack:?}");

    // Stored with the node, as it was sent.
    let stored = NodeStore::new(&f.state).reports();
    assert_eq!(stored["unit-3"].report, report);
    // Shown: in full by `nodes show`, shortened in the table, in the JSON.
    let show = bootd(&f, &["nodes", "show", "unit-3"]);
    assert!(
        show.contains(&format!("boot-img-sha256: {hex}\n")),
        "{show}"
    );
    assert!(show.contains("identity: enrolled"), "{show}");
    let list = bootd(&f, &["nodes", "list"]);
    let line = list.lines().find(|l| l.starts_with("unit-3")).unwrap();
    assert!(line.contains(&hex[..12]), "{list}");
    let json = bootd(&f, &["nodes", "list", "--json"]);
    assert!(
        json.contains(&format!("\"boot_img_sha256\": \"{hex}\"")),
        "{json}"
    );
    // A node without it shows none.
    let other = bootd(&f, &["nodes", "show", "unit-1"]);
    assert!(
        other.contains("last-report: never") && !other.contains("boot-img-sha256"),
        "{other}"
    );
    assert!(bootd_fails(&f, &["nodes", "show", "unit-99"]).contains("unit-99"));

    // The next report says nothing: the node's record says nothing either.
    client::report(
        &base(s.addr),
        &ca,
        &id,
        &NetConfig::default(),
        &report_v("1.0.1"),
    )
    .await
    .unwrap();
    let show = bootd(&f, &["nodes", "show", "unit-3"]);
    assert!(!show.contains("boot-img-sha256"), "{show}");
    assert!(show.contains("version: 1.0.1"), "{show}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_update_is_kept_shown_and_counted_per_node_and_reason() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", b"os", "os")]);
    let s = f.start().await;
    wait_for_timestamp(s.addr, &f.ca_der(), 2).await;
    let ca = f.ca_pem();
    let id = enroll(&f, s.addr, "unit-3").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a reload tick
    let refuse = |reason, detail: String| bootd_api::RefusalReport { reason, detail };
    for r in [
        refuse(
            bootd_api::RefusalReason::Rollback,
            "TUF metadata from https://bootd/: timestamp version 3 older than 5".into(),
        ),
        refuse(bootd_api::RefusalReason::TamperedTarget, "é".repeat(2000)),
    ] {
        let ack = client::refusal(&base(s.addr), &ca, &id, &NetConfig::default(), &r)
            .await
            .unwrap();
        assert!(ack.recorded);
    }
    // Kept, newest last, the long detail cut at a character boundary.
    let kept = NodeStore::new(&f.state).refusals("unit-3");
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[1].report.detail.len(), bootd_api::MAX_REFUSAL_DETAIL);
    let show = bootd(&f, &["nodes", "show", "unit-3"]);
    assert!(
        show.contains("refused: ") && show.contains(" rollback TUF metadata from"),
        "{show}"
    );
    let list = bootd(&f, &["nodes", "list"]);
    let line = list.lines().find(|l| l.starts_with("unit-3")).unwrap();
    assert!(line.ends_with("tampered_target"), "{list}");
    let m = metrics(s.addr, &f.ca_der()).await;
    for reason in ["rollback", "tampered_target"] {
        let series = format!("bootd_node_refusals_total{{node=\"unit-3\",reason=\"{reason}\"}}");
        assert_eq!(metric_value(&m, &series), Some(1.0), "{series} in {m}");
    }
    // Only an enrolled node reports (about itself: the node is its
    // certificate's).
    let anon = get(s.addr, &f.ca_der(), "/v1/node/refusal").await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

fn bootd_fails(f: &Fixture, args: &[&str]) -> String {
    let out = Command::cargo_bin("bootd")
        .unwrap()
        .arg("--config")
        .arg(&f.config_path)
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "bootd {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_node_endpoints_refuse_missing_unknown_revoked_and_expired_certificates() {
    let f = Fixture::new();
    f.release("1.0.0", &[("os.img", b"os", "os")]);
    let s = f.start().await;
    let ca_der = f.ca_der();
    wait_for_timestamp(s.addr, &ca_der, 2).await;
    let ca = f.ca_pem();
    let b = base(s.addr);

    // No certificate: 401.
    let r = get(s.addr, &ca_der, "/v1/node/self").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A certificate from another CA: the handshake is refused.
    let other = tempfile::tempdir().unwrap();
    let other_pki = bootd::pki::PkiFiles {
        ca_cert: other.path().join("ca.pem"),
        ca_key: other.path().join("ca.key"),
        server_cert: other.path().join("s.pem"),
        server_key: other.path().join("s.key"),
    };
    bootd::pki::init(
        &other_pki,
        "evil",
        &["localhost".into()],
        5,
        chrono::Utc::now(),
        false,
    )
    .unwrap();
    let (key_pem, csr) = bootd_client::new_key_and_csr("unit-1").unwrap();
    let foreign =
        bootd::pki::issue_client_cert(&other_pki, &csr, "unit-1", 5, chrono::Utc::now()).unwrap();
    let foreign = Identity {
        node: "unit-1".into(),
        key_pem,
        cert_pem: foreign.cert_pem,
    };
    refused_at_handshake(
        client::report(&b, &ca, &foreign, &NetConfig::default(), &report_v("x")).await,
        "foreign CA",
    );

    // Signed by the rack CA but never issued through enrollment: 403.
    let (key_pem, csr) = bootd_client::new_key_and_csr("unit-1").unwrap();
    let stray =
        bootd::pki::issue_client_cert(&f.pki, &csr, "unit-1", 5, chrono::Utc::now()).unwrap();
    let stray = Identity {
        node: "unit-1".into(),
        key_pem,
        cert_pem: stray.cert_pem,
    };
    match client::report(&b, &ca, &stray, &NetConfig::default(), &report_v("x")).await {
        Err(client::Error::Status { status: 403, .. }) => {}
        other => panic!("stray certificate: {other:?}"),
    }

    // Expired (issued through enrollment, but its validity is over).
    let store = NodeStore::new(&f.state);
    let rack = racklet_hardware::Rack::load(&f.config().rack_file).unwrap();
    let (key_pem, csr) = bootd_client::new_key_and_csr("unit-2").unwrap();
    let req = store
        .submit(&rack, "unit-2", &csr, "test", chrono::Utc::now(), 8)
        .unwrap();
    let past = chrono::Utc::now() - chrono::Duration::days(10);
    let rec = store.approve(&rack, &f.pki, &req.id, 1, past).unwrap();
    let expired = Identity {
        node: "unit-2".into(),
        key_pem,
        cert_pem: rec.cert_pem,
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    refused_at_handshake(
        client::report(&b, &ca, &expired, &NetConfig::default(), &report_v("x")).await,
        "expired",
    );

    // Revoked: works, then `bootd nodes revoke`, then refused.
    let id = enroll(&f, s.addr, "unit-4").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    client::report(&b, &ca, &id, &NetConfig::default(), &report_v("1"))
        .await
        .unwrap();
    let out = bootd(&f, &["nodes", "revoke", "unit-4"]);
    assert!(out.contains("revoked"), "{out}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    refused_at_handshake(
        client::report(&b, &ca, &id, &NetConfig::default(), &report_v("2")).await,
        "revoked",
    );
    let m = metrics(s.addr, &ca_der).await;
    assert!(
        metric_value(&m, "bootd_tls_handshakes_total{result=\"bad_certificate\"}").unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    // Everyone else is still served.
    assert_eq!(
        get(s.addr, &ca_der, "/metadata/1.root.json").await.status,
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enrollment_refuses_unknown_nodes_and_garbage() {
    let f = Fixture::new();
    let s = f.start().await;
    let ca = f.ca_pem();
    let e = Enrollment::begin(&base(s.addr), &ca, "unit-99", &NetConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, client::Error::Status { status: 400, .. }),
        "{e}"
    );
    let ca_der = f.ca_der();
    let body = "{\"node\":\"unit-1\",\"csr_pem\":\"-----BEGIN CERTIFICATE REQUEST-----\\nAAAA\\n-----END CERTIFICATE REQUEST-----\\n\"}";
    let reply = raw(s.addr, &ca_der, &format!(
        "POST /v1/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    // Oversized body.
    let big = "x".repeat(200 * 1024);
    let reply = raw(s.addr, &ca_der, &format!(
        "POST /v1/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    )).await;
    assert!(
        reply.starts_with("HTTP/1.1 413"),
        "{}",
        &reply[..reply.len().min(200)]
    );
    assert!(NodeStore::new(&f.state).pending().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_needs_no_ca_key_and_a_node_removed_from_the_rack_loses_access() {
    let f = Fixture::new();
    let s = f.start().await;
    let ca = f.ca_pem();
    let id = enroll(&f, s.addr, "unit-5").await;
    // The CA key is for the CLI only: bootd serve runs without it.
    s.stop().await;
    let key = std::fs::read(&f.pki.ca_key).unwrap();
    std::fs::remove_file(&f.pki.ca_key).unwrap();
    let s = f.start().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    client::report(
        &base(s.addr),
        &ca,
        &id,
        &NetConfig::default(),
        &report_v("1"),
    )
    .await
    .unwrap();
    let p = Enrollment::begin(&base(s.addr), &ca, "unit-1", &NetConfig::default())
        .await
        .unwrap();
    assert_eq!(p.key_fingerprint.len(), 64);
    // unit-5 leaves the rack description: its certificate no longer opens per-node endpoints.
    let rack = f.config().rack_file;
    let text = std::fs::read_to_string(&rack).unwrap();
    let cut = text.find("  - name: unit-5").unwrap();
    std::fs::write(&rack, &text[..cut]).unwrap();
    let start = std::time::Instant::now();
    loop {
        match client::report(
            &base(s.addr),
            &ca,
            &id,
            &NetConfig::default(),
            &report_v("2"),
        )
        .await
        {
            Err(client::Error::Status { status: 403, .. }) => break,
            other => assert!(
                start.elapsed() < Duration::from_secs(10),
                "still accepted: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&f.pki.ca_key, key).unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_repository_is_restricted_to_enrolled_nodes_by_default() {
    // BASE_CONFIG opens the repository for the other tests; the default
    // (no `require_client_cert` line) is closed.
    let f = Fixture::with_config(&BASE_CONFIG.replace("  require_client_cert: false\n", ""));
    assert!(f.config().repository.require_client_cert);
    f.release("1.0.0", &[("rpi4-stage1.img", b"s1", "stage1")]);
    let s = f.start().await;
    let ca_der = f.ca_der();
    let ca = f.ca_pem();
    let id = enroll(&f, s.addr, "unit-1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mtls = id.mtls_config(&ca).unwrap();
    let start = std::time::Instant::now();
    while get_with(s.addr, mtls.clone(), "/metadata/timestamp.json", &[])
        .await
        .status
        != StatusCode::OK
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "enrolled node never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without a certificate: refused; first-stage files still served.
    assert_eq!(
        get(s.addr, &ca_der, "/metadata/timestamp.json")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(s.addr, &ca_der, "/metadata/1.root.json").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(s.addr, &ca_der, "/net_install/boot.img").await.status,
        StatusCode::OK
    );
    s.stop().await;
}
