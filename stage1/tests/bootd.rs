//! stage1 against a real bootd (in this process, over TLS on loopback) and
//! the real BMC simulator: enrollment (CSR → operator approval → client
//! certificate), an install over mTLS, the hand-off, and `confirm`
//! reporting to bootd.

mod common;

use std::time::Duration;

use common::repo::{uki, workers, Fixture};
use common::sim::Sim;
use racklet_bmc_proto::Slot;
use racklet_hardware::Arch;
use stage1::bmc::Bmc;
use stage1::boot::{self, BootConfig};

const CONFIG: &str = r#"
rack_file: rack.yaml
state_dir: state
listen:
  https: ["127.0.0.1:0"]
tls:
  ca_cert: pki/ca.pem
  ca_key: pki/ca.key
  server_cert: pki/server.pem
  server_key: pki/server.key
  server_names: [localhost]
repository:
  trusted_root: trusted-root.json
  local: repo
  poll_interval_ms: 100
reload_interval_ms: 100
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_node_installs_over_mtls_boots_and_reports_its_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The release manager's repository.
    let fx = Fixture::new();
    fx.release(
        "os-1.uki",
        &uki(Arch::X86_64, "console=ttyS0", 1),
        "1.0.0",
        1,
        Arch::X86_64,
        workers(),
    );
    // bootd serving it.
    common::repo::copy_dir(&fx.repo(), &d.join("repo"));
    std::fs::copy(fx.root_file(), d.join("trusted-root.json")).unwrap();
    std::fs::write(
        d.join("rack.yaml"),
        include_str!("../../hardware/rack.yaml"),
    )
    .unwrap();
    std::fs::write(d.join("bootd.yaml"), CONFIG).unwrap();
    let cfg = bootd::Config::load(&d.join("bootd.yaml")).unwrap();
    bootd::pki::init(
        &cfg.pki,
        "racklet-ref",
        &cfg.server_names,
        30,
        chrono::Utc::now(),
        false,
    )
    .unwrap();
    let pki = cfg.pki.clone();
    let ca_pem = std::fs::read(&pki.ca_cert).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bootd::run(
        cfg.clone(),
        bootd::Listeners {
            https: vec![l],
            plain_http: vec![],
            dhcp: vec![],
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let base = url::Url::parse(&format!("https://localhost:{port}/")).unwrap();

    // Enrollment: the node submits a CSR; the operator approves it.
    let pending = {
        let start = std::time::Instant::now();
        loop {
            match bootd_client::Enrollment::begin(
                &base,
                &ca_pem,
                "unit-2",
                &bootd_client::NetConfig::default(),
            )
            .await
            {
                Ok(p) => break p,
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("enrollment: {e}"),
            }
        }
    };
    let rack = racklet_hardware::Rack::load(&d.join("rack.yaml")).unwrap();
    bootd::nodes::NodeStore::new(&d.join("state"))
        .approve(&rack, &pki, &pending.id, 30, chrono::Utc::now())
        .unwrap();
    let id = pending
        .wait(Duration::from_millis(100), Duration::from_secs(20))
        .await
        .unwrap();
    std::fs::write(d.join("node.pem"), &id.cert_pem).unwrap();
    std::fs::write(d.join("node.key"), &id.key_pem).unwrap();

    // The BMC simulator; stage1 boots unit-2.
    let sim = Sim::start(&d.join("bmc"), 1.0, Some(Duration::from_secs(600)));
    let bmc_addr = sim.units[1].to_string();
    let start = std::time::Instant::now();
    while Bmc::connect(&bmc_addr, 0x21)
        .and_then(|mut b| b.facts())
        .is_err()
    {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    Bmc::connect(&bmc_addr, 0x21)
        .unwrap()
        .set_time(jiff::Timestamp::now())
        .unwrap();
    let disk = d.join("unit-2.disk");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    // The node booted as a signed-boot Pi 5 does: its EEPROM left the
    // SHA-256 of the boot.img it verified in the device tree (raw, then 32
    // reserved zero bytes, as seen on a real Pi 5).
    let devicetree = d.join("devicetree");
    let boot_img = <sha2::Sha256 as sha2::Digest>::digest(b"the boot.img the EEPROM verified");
    let prop = devicetree.join(stage1::devicetree::BOOT_IMG_SHA256);
    std::fs::create_dir_all(prop.parent().unwrap()).unwrap();
    std::fs::write(&prop, [boot_img.as_slice(), &[0u8; 32]].concat()).unwrap();
    let bc = BootConfig {
        bootd: Some(base.clone()),
        ca: Some(pki.ca_cert.clone()),
        identity: Some((d.join("node.pem"), d.join("node.key"))),
        state_dir: d.join("unit-2.state"),
        devicetree,
        ..common::unit2_config(d, disk, bmc_addr, fx.root_file())
    };
    let rec = boot::run(&bc, 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    let c = boot::confirm(&bc).await.unwrap();
    assert_eq!(c.slot, Slot::B);
    // bootd recorded the node's report (from its certificate, over mTLS).
    let reports = bootd::nodes::NodeStore::new(&d.join("state")).reports();
    let r = reports.get("unit-2").expect("bootd has unit-2's report");
    assert!(r.report.confirmed);
    assert_eq!(r.report.version, "1.0.0");
    assert_eq!(
        r.report.security_version,
        Some(bootd_api::SecurityVersion(1))
    );
    // ... with what the firmware verified, as bootd keeps and shows it.
    let reported = r.report.boot_img_sha256.expect("boot_img_sha256 reported");
    assert_eq!(reported.0.as_slice(), boot_img.as_slice());
    let _ = stop.send(());
    let _ = server.await;
    drop(sim);
}
