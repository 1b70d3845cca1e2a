//! stage1 against a real bootd (in this process, over TLS on loopback) and
//! the real BMC simulator: stage1's own enrollment (CSR → operator
//! approval → client certificate, across a reboot), an install over mTLS
//! (bootd's default), the hand-off, `confirm` reporting to bootd, and
//! signed time for a BMC whose clock was never set.

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
reload_interval_ms: 100
repository:
  trusted_root: trusted-root.json
  local: repo
  poll_interval_ms: 100
"#;

/// A real bootd (in this process, on loopback) serving a fresh release of
/// os-1 for unit-2; `repository_extra` is appended to its `repository:`.
struct Rig {
    dir: tempfile::TempDir,
    fx: Fixture,
    base: url::Url,
    pki: bootd::pki::PkiFiles,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<bootd::error::Result<()>>,
}

impl Rig {
    async fn start(repository_extra: &str) -> Rig {
        Self::start_with(|_| repository_extra.to_owned()).await
    }

    async fn start_with(repository_extra: impl Fn(&Fixture) -> String) -> Rig {
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
        std::fs::write(
            d.join("bootd.yaml"),
            format!("{CONFIG}{}", repository_extra(&fx)),
        )
        .unwrap();
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
        Rig {
            dir,
            fx,
            base,
            pki,
            stop,
            server,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_node_installs_over_mtls_boots_and_reports_its_confirmation() {
    let rig = Rig::start("").await;
    let (d, base, pki) = (rig.dir.path(), rig.base.clone(), &rig.pki);
    let fx = &rig.fx;
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
    let mut bc = BootConfig {
        bootd: Some(base.clone()),
        ca: Some(pki.ca_cert.clone()),
        enroll_wait: Some(Duration::from_secs(1)),
        state_dir: d.join("unit-2.state"),
        devicetree,
        ..common::unit2_config(d, disk, bmc_addr, fx.root_file())
    };
    // bootd requires a client certificate by default: without one the node
    // is refused the metadata, asks to join, and cannot boot (its disk is
    // blank). It reboots (its RAM state gone) before the operator acts.
    let e = boot::run(&bc, 1, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot boot"), "{e}");
    let store = bootd::nodes::NodeStore::new(&d.join("state"));
    let pending = store.pending();
    assert_eq!(pending.len(), 1, "one request: {pending:?}");
    assert_eq!(pending[0].node, "unit-2");
    std::fs::remove_dir_all(&bc.state_dir).unwrap();
    // The operator approves the request while the node boots again: the
    // node takes up the same request (kept on its disk), gets its
    // certificate, and installs over mTLS.
    let rack = racklet_hardware::Rack::load(&d.join("rack.yaml")).unwrap();
    let id = pending[0].id.clone();
    let approver = {
        let (d, pki) = (d.to_owned(), pki.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            bootd::nodes::NodeStore::new(&d.join("state"))
                .approve(&rack, &pki, &id, 30, chrono::Utc::now())
                .unwrap();
        })
    };
    bc.enroll_wait = Some(Duration::from_secs(20));
    let rec = boot::run(&bc, 10, Duration::from_millis(300))
        .await
        .unwrap();
    approver.join().unwrap();
    assert_eq!(store.pending().len(), 0, "no second request");
    let (cert, key) = stage1::identity::stored(&bc.state_dir).expect("kept identity");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(cert)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    // The OS's confirm starts with an empty state directory: the identity
    // comes back from the disk.
    std::fs::remove_dir_all(&bc.state_dir).unwrap();
    let bc = BootConfig {
        confirm_token: stage1::bmc::ConfirmToken::from_cmdline(&rec.cmdline)
            .transpose()
            .unwrap(),
        ..bc
    };
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
    rig.stop().await;
    drop(sim);
}

/// unit-2 of a fresh BMC simulator (its clock never set) in `rig`'s
/// directory, booting from `rig`'s bootd without a client certificate.
fn factory_node(rig: &Rig, name: &str) -> (Sim, BootConfig) {
    let d = rig.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
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
    let disk = d.join("unit-2.disk");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let bc = BootConfig {
        bootd: Some(rig.base.clone()),
        ca: Some(rig.pki.ca_cert.clone()),
        ..common::unit2_config(&d, disk, bmc_addr, rig.fx.root_file())
    };
    (sim, bc)
}

fn bmc_time(bc: &BootConfig) -> Option<jiff::Timestamp> {
    Bmc::connect(&bc.bmc_addr, bc.smbus)
        .unwrap()
        .facts()
        .unwrap()
        .time
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_bmc_clock_takes_bootds_signed_time_and_the_node_installs() {
    // bootd holds the online timestamp key the node's root names.
    let rig = Rig::start_with(|fx| {
        format!(
            "  require_client_cert: false\n  timestamp:\n    key: {}\n",
            fx.dir.path().join("keys/timestamp.pem").display()
        )
    })
    .await;
    let (sim, bc) = factory_node(&rig, "node");
    assert_eq!(bmc_time(&bc), None, "a factory BMC's clock is not set");
    let t = boot::signed_time(&bc).await.unwrap();
    let drift = (t.as_second() - jiff::Timestamp::now().as_second()).abs();
    assert!(drift < 120, "signed time {t} is bootd's clock");
    let rec = boot::run(&bc, 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    // The BMC's clock is now set, from the signed time, and the floor kept.
    let set = bmc_time(&bc).expect("the BMC's clock was set");
    assert!((set.as_second() - t.as_second()).abs() < 120);
    assert!(stage1::tuf::time_floor(&bc.state_dir).unwrap().is_some());
    rig.stop().await;
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_signed_by_a_key_the_root_does_not_name_or_no_signed_time_refuses_updates() {
    // A bootd whose "timestamp key" is not the root's: what a server
    // pretending to be the rack's bootd could sign.
    let rig = Rig::start_with(|fx| {
        let k = fx.dir.path().join("keys/impostor.pem");
        imgsign::keys::SigningKeyPair::generate_file(&k).unwrap();
        format!(
            "  require_client_cert: false\n  timestamp:\n    key: {}\n",
            k.display()
        )
    })
    .await;
    let (sim, bc) = factory_node(&rig, "forged");
    let e = boot::signed_time(&bc).await.unwrap_err().to_string();
    assert!(
        e.contains("not signed by the timestamp role of the trusted root"),
        "{e}"
    );
    // The boot refuses updates: nothing installed, the clock still unset.
    let e = boot::run(&bc, 1, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot boot"), "{e}");
    assert_eq!(bmc_time(&bc), None);
    let slots = stage1::slots::SlotStore::open(std::fs::File::open(&bc.disk).unwrap())
        .unwrap()
        .state()
        .clone();
    assert!(slots.slots.iter().all(|s| s.image.is_none()), "{slots:?}");
    rig.stop().await;
    drop(sim);

    // A bootd without the key cannot sign at all, and says so.
    let rig = Rig::start("  require_client_cert: false\n").await;
    let (sim, bc) = factory_node(&rig, "unsigned");
    let e = boot::signed_time(&bc).await.unwrap_err().to_string();
    assert!(
        e.contains("503") && e.contains("holds no online timestamp key"),
        "{e}"
    );
    assert!(boot::run(&bc, 1, Duration::from_millis(100)).await.is_err());
    assert_eq!(bmc_time(&bc), None);
    rig.stop().await;
    drop(sim);
}

/// Approves the first request for `node` that reaches bootd's store in
/// `rig` (what the operator does), from a thread; not one of `stale`.
fn approve_when_asked(
    rig: &Rig,
    node: &'static str,
    stale: Vec<String>,
) -> std::thread::JoinHandle<()> {
    let (d, pki) = (rig.dir.path().to_owned(), rig.pki.clone());
    std::thread::spawn(move || {
        let store = bootd::nodes::NodeStore::new(&d.join("state"));
        let rack = racklet_hardware::Rack::load(&d.join("rack.yaml")).unwrap();
        let start = std::time::Instant::now();
        loop {
            if let Some(p) = store
                .pending()
                .into_iter()
                .find(|p| p.node == node && !stale.contains(&p.id))
            {
                store
                    .approve(&rack, &pki, &p.id, 30, chrono::Utc::now())
                    .unwrap();
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{node} never asked"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_update_is_reported_to_bootd_not_only_logged() {
    // bootd as shipped (client certificates required, no online timestamp
    // key); an enrolled node whose factory BMC clock was never set: it
    // must refuse every update — and say so to bootd.
    let rig = Rig::start("").await;
    let (sim, mut bc) = factory_node(&rig, "loud");
    bc.enroll_wait = Some(Duration::from_secs(20));
    let approver = approve_when_asked(&rig, "unit-2", Vec::new());
    let e = boot::run(&bc, 1, Duration::from_millis(100))
        .await
        .unwrap_err();
    approver.join().unwrap();
    assert!(e.to_string().contains("cannot boot"), "{e}");
    let store = bootd::nodes::NodeStore::new(&rig.dir.path().join("state"));
    let refusals = store.refusals("unit-2");
    let last = refusals.last().expect("the refusal reached bootd");
    assert_eq!(
        last.report.reason,
        bootd_api::RefusalReason::NoTrustedTime,
        "{refusals:?}"
    );
    assert!(
        last.report.detail.contains("holds no online timestamp key")
            || last.report.detail.contains("never set"),
        "{}",
        last.report.detail
    );
    // ... and to its BMC, which keeps it whoever bootd is.
    let r = Bmc::connect(&bc.bmc_addr, bc.smbus)
        .unwrap()
        .refusals()
        .unwrap();
    assert!(r.count >= 1, "{r:?}");
    assert_eq!(
        r.last.map(|l| l.reason),
        Some(racklet_bmc_proto::RefusalReason::NoTrustedTime)
    );
    rig.stop().await;
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_disk_for_its_identity_asks_again_at_every_boot() {
    // No state area (`--no-state-on-disk`) and a RAM state directory: the
    // node cannot keep its key, so every boot is a new request with a new
    // key — replacing its older one in bootd's queue, never adding to it —
    // and it boots only in a boot whose request the operator approves.
    let rig = Rig::start("").await;
    let (sim, mut bc) = factory_node(&rig, "diskless");
    bc.state_on_disk = false;
    bc.enroll_wait = Some(Duration::from_secs(1));
    Bmc::connect(&bc.bmc_addr, bc.smbus)
        .unwrap()
        .set_time(jiff::Timestamp::now())
        .unwrap();
    let store = bootd::nodes::NodeStore::new(&rig.dir.path().join("state"));
    let mut ids = Vec::new();
    for _ in 0..2 {
        assert!(boot::run(&bc, 0, Duration::from_millis(100)).await.is_err());
        let pending = store.pending();
        assert_eq!(pending.len(), 1, "{pending:?}");
        ids.push(pending[0].id.clone());
        std::fs::remove_dir_all(&bc.state_dir).unwrap();
    }
    assert_ne!(ids[0], ids[1], "a new key, a new request");
    // Approved while it waits: that boot installs. (The request of the
    // boot before is void: the node forgot that key.)
    bc.enroll_wait = Some(Duration::from_secs(20));
    let approver = approve_when_asked(&rig, "unit-2", ids.clone());
    let rec = boot::run(&bc, 10, Duration::from_millis(300))
        .await
        .unwrap();
    approver.join().unwrap();
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    rig.stop().await;
    drop(sim);
}
