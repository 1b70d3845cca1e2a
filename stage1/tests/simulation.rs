//! stage1 in simulation, end to end: the real BMC simulator over its
//! protocol socket, a real imgsign repository over HTTPS, a file-backed
//! disk. First install, boot, confirm, update, a compromised server's
//! rollback, an offline boot, and a BMC fallback after an update that
//! never confirms.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::repo::{uki, workers, Fixture};
use common::server::{Pki, Server};
use common::sim::Sim;
use racklet_bmc_proto::{Request, Response, Slot};
use racklet_hardware::{Arch, NodeName};
use stage1::bmc::Bmc;
use stage1::boot::{self, BootConfig, Mode};
use stage1::fetch::Backoff;
use stage1::handoff::Record;
use stage1::plan::NodeFacts;
use stage1::slots::{SlotStatus, SlotStore};
use stage1::transport::NetConfig;

const UNIT: usize = 1; // unit-2, SMBus 0x21, group workers

struct World {
    _dir: tempfile::TempDir,
    sim: Sim,
    fx: Fixture,
    pki: Pki,
    server: Option<Server>,
    cfg: BootConfig,
}

fn wait_plan(addr: &str, want: impl Fn(&racklet_bmc_proto::BootPlan) -> bool) {
    let start = Instant::now();
    loop {
        if let Ok(mut b) = Bmc::connect(addr, 0x21) {
            if let Ok(Response::BootPlan(p)) = b.call(Request::GetBootPlan) {
                if want(&p) {
                    return;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "BMC never reached the wanted plan"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::start(&dir.path().join("bmc"), 1.0, Some(Duration::from_secs(600)));
        let bmc_addr = sim.units[UNIT].to_string();
        wait_plan(&bmc_addr, |_| true);
        // The rack's clock: the BMC keeps time for a node without an RTC.
        Bmc::connect(&bmc_addr, 0x21)
            .unwrap()
            .set_time(jiff::Timestamp::now())
            .unwrap();
        let fx = Fixture::new();
        fx.release(
            "os-1.uki",
            &uki(Arch::X86_64, "console=ttyS0 v1", 1),
            "1.0.0",
            1,
            Arch::X86_64,
            workers(),
        );
        let pki = Pki::new("rack");
        let server = Server::start(fx.repo(), &pki, None).await;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let disk = dir.path().join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let cfg = BootConfig {
            node: NodeFacts {
                name: NodeName::new("unit-2").unwrap(),
                groups: ["workers".to_string()].into(),
                arch: Arch::X86_64,
                channel: imgsign::release::Channel::new("stable").unwrap(),
            },
            disk,
            bmc_addr,
            smbus: 0x21,
            bootd: Some(server.base()),
            ca: Some(ca),
            identity: None,
            root: fx.root_file(),
            state_dir: dir.path().join("state"),
            mode: Mode::Simulate {
                record: dir.path().join("handoff.json"),
            },
            net: NetConfig {
                read_timeout: Duration::from_secs(3),
                ..NetConfig::default()
            },
            backoff: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(1),
                retries: 3,
            },
            default_cmdline: String::new(),
            set_clock: false,
        };
        World {
            _dir: dir,
            sim,
            fx,
            pki,
            server: Some(server),
            cfg,
        }
    }

    async fn boot(&self) -> Record {
        let rec = boot::run(&self.cfg, 10, Duration::from_millis(300))
            .await
            .unwrap();
        let on_disk: Record =
            serde_json::from_slice(&std::fs::read(self.record_path()).unwrap()).unwrap();
        assert_eq!(on_disk, rec);
        rec
    }

    fn record_path(&self) -> PathBuf {
        match &self.cfg.mode {
            Mode::Simulate { record } => record.clone(),
            Mode::Kexec => unreachable!(),
        }
    }

    fn slots(&self) -> stage1::slots::SlotState {
        SlotStore::open(std::fs::File::open(&self.cfg.disk).unwrap())
            .unwrap()
            .state()
            .clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_boot_confirm_update_refuse_rollback_boot_offline_and_fall_back() {
    let mut w = World::new().await;

    // 1. Blank disk: format, install os-1 into B (the BMC boots A), report,
    //    restart into B, hand off.
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    assert_eq!(rec.format, "uki");
    assert_eq!(rec.cmdline, "console=ttyS0 v1");
    assert_eq!(w.slots().active, Some(Slot::B));

    // 2. The booted OS confirms: the BMC raises the rollback minimum to 1.
    let c = boot::confirm(&w.cfg).await.unwrap();
    assert_eq!((c.slot, c.rollback_min.0), (Slot::B, 1));

    // 3. An update (security version 2) goes into A; B is never written.
    let b_before = w.slots().slot(Slot::B).clone();
    let old = tempfile::tempdir().unwrap();
    common::repo::copy_dir(&w.fx.repo(), old.path());
    w.fx.release(
        "os-2.uki",
        &uki(Arch::X86_64, "console=ttyS0 v2", 2),
        "2.0.0",
        2,
        Arch::X86_64,
        workers(),
    );
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    assert_eq!(w.slots().slot(Slot::B), &b_before);

    // 4. A compromised server replays the old repository: refused
    //    (timestamp rollback); the node boots what it has, re-verified
    //    against the stored metadata.
    let evil = Server::start(old.path().to_owned(), &w.pki, None).await;
    let good_url = w.cfg.bootd.replace(evil.base());
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));

    // 5. bootd unreachable: offline boot of the active slot.
    w.server.take();
    drop(evil);
    w.cfg.bootd = good_url;
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));

    // 6. os-2 never confirms: power cycles use up its tries, the BMC falls
    //    back to B; stage1 boots B, records A as failed, and does not
    //    install os-2 again.
    let addr = w.cfg.bmc_addr.clone();
    for _ in 0..3 {
        w.sim.control("reset unit-2 power-cycle").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        wait_plan(&addr, |p| p.boot_count > 0);
        std::thread::sleep(Duration::from_millis(900));
    }
    wait_plan(&addr, |p| p.slot == Slot::B && p.fallback);
    let server = Server::start(w.fx.repo(), &w.pki, None).await;
    w.cfg.bootd = Some(server.base());
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    assert_eq!(w.slots().slot(Slot::A).status, SlotStatus::Failed);
    assert_eq!(w.slots().active, Some(Slot::B));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_button_forces_slot_b_but_never_below_the_rollback_minimum() {
    let w = World::new().await;
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    boot::confirm(&w.cfg).await.unwrap();
    w.fx.release(
        "os-2.uki",
        &uki(Arch::X86_64, "v2", 2),
        "2.0.0",
        2,
        Arch::X86_64,
        workers(),
    );
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    // Long press: the BMC power-cycles into B, forced. os-2 is unconfirmed,
    // so the minimum is still 1 and os-1 may boot; nothing is written.
    let addr = w.cfg.bmc_addr.clone();
    w.sim.control("press unit-2 long").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::B && p.forced_by_button);
    let before = w.slots();
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    assert_eq!(w.slots().slots, before.slots);
    // Back on A, confirm os-2: the minimum becomes 2. Forcing B now is
    // refused: os-1 is below the rollback minimum.
    w.sim.control("reset unit-2 power-cycle").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::A && !p.forced_by_button);
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    let c = boot::confirm(&w.cfg).await.unwrap();
    assert_eq!(c.rollback_min.0, 2);
    w.sim.control("press unit-2 long").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::B && p.forced_by_button);
    let e = boot::boot_once(&w.cfg).await.unwrap_err();
    assert!(e.to_string().contains("below the rollback minimum"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_confirmed_forced_b_boot_the_next_update_goes_into_the_other_slot() {
    // Found by `cargo xtask e2e`: the BMC then boots B while the disk still
    // calls A active; the install into A must not be refused as a write to
    // the active slot.
    let w = World::new().await;
    let addr = w.cfg.bmc_addr.clone();
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    boot::confirm(&w.cfg).await.unwrap();
    // A feature release: same security version, so os-1 stays bootable.
    w.fx.release(
        "os-2.uki",
        &uki(Arch::X86_64, "v2", 1),
        "2.0.0",
        1,
        Arch::X86_64,
        workers(),
    );
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-2.uki"));
    boot::confirm(&w.cfg).await.unwrap();
    w.sim.control("press unit-2 long").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::B && p.forced_by_button);
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('B', "os-1.uki"));
    boot::confirm(&w.cfg).await.unwrap();
    assert_eq!(
        w.slots().active,
        Some(Slot::A),
        "a forced boot writes nothing"
    );
    w.sim.control("reset unit-2 power-cycle").unwrap();
    wait_plan(&addr, |p| p.slot == Slot::B && !p.forced_by_button);
    w.fx.release(
        "os-3.uki",
        &uki(Arch::X86_64, "v3", 1),
        "3.0.0",
        1,
        Arch::X86_64,
        workers(),
    );
    let rec = w.boot().await;
    assert_eq!((rec.slot, rec.image.as_str()), ('A', "os-3.uki"));
    let s = w.slots();
    assert_eq!(s.active, Some(Slot::A));
    assert_eq!(s.slot(Slot::B).status, SlotStatus::Valid);
}
